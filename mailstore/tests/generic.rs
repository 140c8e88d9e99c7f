//! One test suite, run against both backends (`maildir::*` and `memory::*`).

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailbag_mailstore::{
    Error, Folder, MaildirOptions, MaildirStore, Mailstore, MemoryOptions, MemoryStore, Uid,
    UserName,
};

/// Backend-independent options for a test store.
#[derive(Clone, Copy, Default)]
struct Opts {
    max_message_size: Option<u64>,
    quota: Option<u64>,
    auto_create: bool,
}

struct Env {
    store: Arc<dyn Mailstore>,
    _dir: Option<tempfile::TempDir>,
}

fn maildir(o: Opts) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut mo = MaildirOptions::default();
    if let Some(m) = o.max_message_size {
        mo.max_message_size = m;
    }
    mo.user_quota = o.quota;
    mo.auto_create_users = o.auto_create;
    Env {
        store: Arc::new(MaildirStore::new(dir.path(), mo).unwrap()),
        _dir: Some(dir),
    }
}

fn memory(o: Opts) -> Env {
    let mut mo = MemoryOptions::default();
    if let Some(m) = o.max_message_size {
        mo.max_message_size = m;
    }
    mo.user_quota = o.quota;
    mo.auto_create_users = o.auto_create;
    Env {
        store: Arc::new(MemoryStore::with_options(mo)),
        _dir: None,
    }
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

fn with_joe(make: fn(Opts) -> Env, o: Opts) -> Env {
    let env = make(o);
    env.store.create_user(&user("joe")).unwrap();
    env
}

fn put(s: &dyn Mailstore, u: &str, f: Folder, msg: &[u8]) {
    s.deliver(&user(u), f, &mut &msg[..]).unwrap();
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

fn crlf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = 0;
    for &b in msg {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

mod cases {
    use super::*;

    pub(crate) fn users_are_explicit(make: fn(Opts) -> Env) {
        let env = make(Opts::default());
        let s = &*env.store;
        let joe = user("joe");
        assert!(!s.user_exists(&joe).unwrap());
        let e = s.begin_delivery(&joe, Folder::Inbox).unwrap_err();
        assert!(matches!(e, Error::UnknownUser(ref n) if n == "joe"), "{e}");
        assert!(!e.is_temporary());
        assert!(matches!(s.open_maildrop(&joe), Err(Error::UnknownUser(_))));
        assert!(matches!(
            s.list(&joe, Folder::Spam),
            Err(Error::UnknownUser(_))
        ));
        s.create_user(&joe).unwrap();
        assert!(matches!(s.create_user(&joe), Err(Error::UserExists(_))));
        s.create_user(&user("ann")).unwrap();
        assert_eq!(s.users().unwrap(), vec![user("ann"), joe.clone()]);
        assert!(s.user_exists(&joe).unwrap());
    }

    pub(crate) fn auto_create_on_delivery(make: fn(Opts) -> Env) {
        let env = make(Opts {
            auto_create: true,
            ..Opts::default()
        });
        put(&*env.store, "new.user", Folder::Spam, b"x\n");
        assert!(env.store.user_exists(&user("new.user")).unwrap());
        assert_eq!(
            env.store
                .list(&user("new.user"), Folder::Spam)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            env.store.open_maildrop(&user("new.user")).unwrap().stat(),
            (0, 0)
        );
    }

    pub(crate) fn deliver_list_and_retrieve(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let msgs: [&[u8]; 4] = [
            b"Subject: one\n\nbody\n",
            b"Subject: two\r\n\r\ncrlf body\r\n",
            b"Subject: mixed\n\r\nno final newline",
            b"",
        ];
        for m in msgs {
            put(s, "joe", Folder::Inbox, m);
        }
        let mut md = s.open_maildrop(&user("joe")).unwrap();
        assert_eq!(md.entries().len(), 4);
        // The size counts the CRLF POP3 adds after an unterminated last line.
        let pop3_size = |m: &[u8]| {
            let added = if m.is_empty() || m.ends_with(b"\n") {
                0
            } else {
                2
            };
            crlf(m).len() as u64 + added
        };
        for (i, m) in msgs.iter().enumerate() {
            let want = crlf(m);
            assert_eq!(md.entries()[i].size, pop3_size(m), "message {}", i + 1);
            assert_eq!(read_all(md.read_message(i + 1).unwrap()), want);
        }
        let total: u64 = msgs.iter().map(|m| pop3_size(m)).sum();
        assert_eq!(md.stat(), (4, total));
        assert!(matches!(md.read_message(0), Err(Error::NoSuchMessage)));
        assert!(matches!(md.read_message(5), Err(Error::NoSuchMessage)));
        assert!(matches!(md.entry(5), Err(Error::NoSuchMessage)));
    }

    pub(crate) fn top_streams_header_and_n_lines(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        put(s, "joe", Folder::Inbox, b"A: 1\nB: 2\n\nl1\nl2\nl3\n");
        let mut md = s.open_maildrop(&user("joe")).unwrap();
        assert_eq!(
            read_all(md.read_top(1, 0).unwrap()),
            b"A: 1\r\nB: 2\r\n\r\n"
        );
        assert_eq!(
            read_all(md.read_top(1, 2).unwrap()),
            b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
        );
        assert_eq!(
            read_all(md.read_top(1, 99).unwrap()),
            crlf(b"A: 1\nB: 2\n\nl1\nl2\nl3\n")
        );
        // TOP does not count as retrieval.
        assert_eq!(md.commit().unwrap().seen, 0);
        let m = &s.list(&user("joe"), Folder::Inbox).unwrap()[0];
        assert!(!m.seen);
    }

    pub(crate) fn maildrop_lock_is_exclusive_and_released(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let md = s.open_maildrop(&user("joe")).unwrap();
        let e = s.open_maildrop(&user("joe")).unwrap_err();
        assert!(matches!(e, Error::InUse));
        assert!(e.is_temporary());
        // Another user's maildrop is independent; delivery still works.
        s.create_user(&user("ann")).unwrap();
        drop(s.open_maildrop(&user("ann")).unwrap());
        put(s, "joe", Folder::Inbox, b"during session\n");
        assert_eq!(md.entries().len(), 0, "listing is fixed at open");
        drop(md);
        let md = s.open_maildrop(&user("joe")).unwrap();
        assert_eq!(md.entries().len(), 1);
        md.commit().unwrap();
        drop(s.open_maildrop(&user("joe")).unwrap());
    }

    pub(crate) fn spam_folder_as_a_maildrop(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let joe = user("joe");
        put(s, "joe", Folder::Inbox, b"Subject: ham\n\nham\n");
        put(s, "joe", Folder::Spam, b"Subject: spam 1\n\none\n");
        put(s, "joe", Folder::Spam, b"Subject: spam 2\n\ntwo\n");
        let spam_uids: Vec<Uid> = s
            .list(&joe, Folder::Spam)
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        // Its own lock: the INBOX and the Spam folder open at once, each once.
        let inbox = s.open_maildrop(&joe).unwrap();
        let mut spam = s.open_folder_maildrop(&joe, Folder::Spam).unwrap();
        assert!(matches!(
            s.open_folder_maildrop(&joe, Folder::Spam),
            Err(Error::InUse)
        ));
        assert!(matches!(
            s.open_folder_maildrop(&joe, Folder::Inbox),
            Err(Error::InUse)
        ));
        assert_eq!(inbox.entries().len(), 1);
        let uids: Vec<Uid> = spam.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(uids, spam_uids, "UIDL is the folder's own UIDs");
        assert_eq!(
            read_all(spam.read_message(2).unwrap()),
            b"Subject: spam 2\r\n\r\ntwo\r\n"
        );
        spam.mark_deleted(1).unwrap();
        assert_eq!(spam.commit().unwrap().deleted, 1);
        drop(inbox);
        let left: Vec<Uid> = s
            .list(&joe, Folder::Spam)
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(left, spam_uids[1..], "DELE in Spam deletes from Spam");
        assert_eq!(s.list(&joe, Folder::Inbox).unwrap().len(), 1);
        // Released: open again.
        let spam = s.open_folder_maildrop(&joe, Folder::Spam).unwrap();
        assert_eq!(spam.entries().len(), 1);
    }

    pub(crate) fn deletion_marks_commit_and_rollback(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        for i in 1..=4 {
            put(
                s,
                "joe",
                Folder::Inbox,
                format!("Subject: {i}\n\n{i}\n").as_bytes(),
            );
        }
        let mut md = s.open_maildrop(&user("joe")).unwrap();
        let uids: Vec<Uid> = md.entries().iter().map(|e| e.uid.clone()).collect();
        let size2 = md.entries()[1].size;
        let (n, total) = md.stat();
        md.mark_deleted(2).unwrap();
        assert!(md.is_deleted(2));
        assert_eq!(md.stat(), (n - 1, total - size2));
        assert!(matches!(md.read_message(2), Err(Error::MessageDeleted)));
        assert!(matches!(md.mark_deleted(2), Err(Error::MessageDeleted)));
        assert!(matches!(md.entry(2), Err(Error::MessageDeleted)));
        md.unmark_all();
        assert_eq!(md.stat(), (n, total));
        md.mark_deleted(1).unwrap();
        md.mark_deleted(3).unwrap();
        drop(md); // no commit: nothing changes
        let mut md = s.open_maildrop(&user("joe")).unwrap();
        assert_eq!(md.entries().len(), 4);
        md.mark_deleted(1).unwrap();
        md.mark_deleted(3).unwrap();
        let _ = read_all(md.read_message(4).unwrap());
        let summary = md.commit().unwrap();
        assert_eq!((summary.deleted, summary.seen), (2, 1));
        let md = s.open_maildrop(&user("joe")).unwrap();
        let left: Vec<Uid> = md.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(left, vec![uids[1].clone(), uids[3].clone()]);
        let listed = s.list(&user("joe"), Folder::Inbox).unwrap();
        assert_eq!(
            listed.iter().map(|m| m.seen).collect::<Vec<_>>(),
            vec![false, true]
        );
    }

    pub(crate) fn uids_are_stable_unique_and_never_reused(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        for i in 0..5 {
            put(s, "joe", Folder::Inbox, format!("m{i}\n").as_bytes());
        }
        let first: Vec<Uid> = s
            .open_maildrop(&user("joe"))
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.uid.clone())
            .collect();
        let mut seen = std::collections::HashSet::new();
        for u in &first {
            assert!(seen.insert(u.clone()), "duplicate uid {u}");
            assert!(Uid::new(u.as_str()).is_ok());
        }
        // Retrieve (moves new -> cur in a Maildir), delete one, deliver more.
        let mut md = s.open_maildrop(&user("joe")).unwrap();
        for n in 1..=5 {
            let _ = read_all(md.read_message(n).unwrap());
        }
        md.mark_deleted(5).unwrap();
        md.commit().unwrap();
        put(s, "joe", Folder::Inbox, b"m5\n");
        let again: Vec<Uid> = s
            .open_maildrop(&user("joe"))
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.uid.clone())
            .collect();
        assert_eq!(&again[..4], &first[..4]);
        assert_eq!(again.len(), 5);
        assert!(!first.contains(&again[4]), "uid reused");
    }

    pub(crate) fn spam_folder_is_separate(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        put(s, "joe", Folder::Spam, b"Subject: spam\n\nbuy\n");
        put(s, "joe", Folder::Inbox, b"Subject: ham\n\nhi\n");
        assert_eq!(s.open_maildrop(&user("joe")).unwrap().entries().len(), 1);
        let spam = s.list(&user("joe"), Folder::Spam).unwrap();
        assert_eq!(spam.len(), 1);
        assert_eq!(spam[0].size, crlf(b"Subject: spam\n\nbuy\n").len() as u64);
        let body = read_all(s.read(&user("joe"), Folder::Spam, &spam[0].uid).unwrap());
        assert_eq!(body, crlf(b"Subject: spam\n\nbuy\n"));
        let inbox = s.list(&user("joe"), Folder::Inbox).unwrap();
        let body = read_all(s.read(&user("joe"), Folder::Inbox, &inbox[0].uid).unwrap());
        assert_eq!(body, crlf(b"Subject: ham\n\nhi\n"));
    }

    pub(crate) fn move_and_delete_by_uid(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let joe = user("joe");
        put(
            s,
            "joe",
            Folder::Spam,
            b"Subject: false positive\n\nhello\n",
        );
        put(s, "joe", Folder::Spam, b"Subject: real spam\n\nbuy\n");
        let spam = s.list(&joe, Folder::Spam).unwrap();
        s.move_message(&joe, Folder::Spam, &spam[0].uid, Folder::Inbox)
            .unwrap();
        assert!(matches!(
            s.move_message(&joe, Folder::Spam, &spam[0].uid, Folder::Inbox),
            Err(Error::NoSuchMessage)
        ));
        let inbox = s.list(&joe, Folder::Inbox).unwrap();
        assert_eq!(inbox.len(), 1);
        assert!(inbox[0].saved >= spam[0].saved);
        let mut md = s.open_maildrop(&joe).unwrap();
        assert_eq!(
            read_all(md.read_message(1).unwrap()),
            crlf(b"Subject: false positive\n\nhello\n")
        );
        drop(md);
        s.delete(&joe, Folder::Spam, &spam[1].uid).unwrap();
        assert!(matches!(
            s.delete(&joe, Folder::Spam, &spam[1].uid),
            Err(Error::NoSuchMessage)
        ));
        assert!(s.list(&joe, Folder::Spam).unwrap().is_empty());
    }

    pub(crate) fn retention_by_save_time(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let joe = user("joe");
        // The Date header says 1970: it must not matter.
        put(
            s,
            "joe",
            Folder::Spam,
            b"Date: Thu, 01 Jan 1970 00:00:00 +0000\n\nold?\n",
        );
        put(s, "joe", Folder::Inbox, b"inbox\n");
        std::thread::sleep(Duration::from_millis(30));
        let mid = SystemTime::now();
        std::thread::sleep(Duration::from_millis(30));
        put(
            s,
            "joe",
            Folder::Spam,
            b"Date: Thu, 01 Jan 2099 00:00:00 +0000\n\nnew\n",
        );
        assert_eq!(
            s.expunge_older_than(&joe, Folder::Spam, SystemTime::UNIX_EPOCH)
                .unwrap(),
            0
        );
        assert_eq!(s.expunge_older_than(&joe, Folder::Spam, mid).unwrap(), 1);
        let left = s.list(&joe, Folder::Spam).unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].saved > mid);
        assert_eq!(
            read_all(s.read(&joe, Folder::Spam, &left[0].uid).unwrap()),
            crlf(b"Date: Thu, 01 Jan 2099 00:00:00 +0000\n\nnew\n")
        );
        s.create_user(&user("ann")).unwrap();
        put(s, "ann", Folder::Spam, b"x\n");
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(s.expunge_all_older_than(Folder::Spam, later).unwrap(), 2);
        assert_eq!(
            s.list(&joe, Folder::Inbox).unwrap().len(),
            1,
            "INBOX untouched"
        );
    }

    pub(crate) fn size_limit(make: fn(Opts) -> Env) {
        let env = with_joe(
            make,
            Opts {
                max_message_size: Some(100),
                ..Opts::default()
            },
        );
        let s = &*env.store;
        let joe = user("joe");
        put(s, "joe", Folder::Inbox, &[b'a'; 100]);
        let mut d = s.begin_delivery(&joe, Folder::Inbox).unwrap();
        d.write_chunk(&[b'a'; 60]).unwrap();
        let e = d.write_chunk(&[b'a'; 41]).unwrap_err();
        assert!(matches!(e, Error::MessageTooLarge { limit: 100 }));
        assert!(!e.is_temporary());
        assert!(d.commit().is_err());
        assert_eq!(s.list(&joe, Folder::Inbox).unwrap().len(), 1);
    }

    pub(crate) fn quota(make: fn(Opts) -> Env) {
        let env = with_joe(
            make,
            Opts {
                quota: Some(100),
                ..Opts::default()
            },
        );
        let s = &*env.store;
        let joe = user("joe");
        put(s, "joe", Folder::Inbox, &[b'a'; 60]);
        // Asked before a message (SMTP RCPT): room for 40 more, not 41.
        assert!(s.check_quota(&joe, 0).is_ok());
        assert!(s.check_quota(&joe, 40).is_ok());
        let e = s.check_quota(&joe, 41).unwrap_err();
        assert!(matches!(e, Error::QuotaExceeded { quota: 100, .. }), "{e}");
        // A user without a mailbox holds nothing yet.
        assert!(s.check_quota(&user("nobody"), 100).is_ok());
        assert!(s.check_quota(&user("nobody"), 101).is_err());
        // Would go over at commit.
        let e = s
            .deliver(&joe, Folder::Spam, &mut &[b'b'; 41][..])
            .unwrap_err();
        assert!(matches!(e, Error::QuotaExceeded { quota: 100, .. }), "{e}");
        assert!(!e.is_temporary());
        put(s, "joe", Folder::Spam, &[b'b'; 40]);
        // Full: no room even for a message of unknown size.
        assert!(matches!(
            s.check_quota(&joe, 0),
            Err(Error::QuotaExceeded { .. })
        ));
        // Full: refused at the start.
        assert!(matches!(
            s.begin_delivery(&joe, Folder::Inbox),
            Err(Error::QuotaExceeded { .. })
        ));
        assert_eq!(s.list(&joe, Folder::Inbox).unwrap().len(), 1);
        assert_eq!(s.list(&joe, Folder::Spam).unwrap().len(), 1);
    }

    pub(crate) fn uncommitted_delivery_stores_nothing(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let mut d = s.begin_delivery(&user("joe"), Folder::Inbox).unwrap();
        std::io::Write::write_all(&mut d, b"Subject: half\n\nwritten").unwrap();
        assert_eq!(d.written(), 22);
        drop(d);
        assert!(s.list(&user("joe"), Folder::Inbox).unwrap().is_empty());
    }

    pub(crate) fn sealed_deliveries_commit_later(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let joe = user("joe");
        // Every copy written and sealed first, then all committed, as a
        // server delivering to many users does.
        let mut prepared = Vec::new();
        for i in 0..3 {
            let mut d = s.begin_delivery(&joe, Folder::Inbox).unwrap();
            d.write_chunk(format!("Subject: {i}\n\nbody\n").as_bytes())
                .unwrap();
            d.seal().unwrap();
            assert!(matches!(d.write_chunk(b"late"), Err(Error::DeliveryFailed)));
            assert_eq!(d.written(), 17);
            prepared.push(d);
        }
        assert!(s.list(&joe, Folder::Inbox).unwrap().is_empty());
        // A sealed copy dropped uncommitted stores nothing.
        drop(prepared.pop());
        for d in prepared {
            assert_eq!(d.commit().unwrap().stored_size, 17);
        }
        assert_eq!(s.list(&joe, Folder::Inbox).unwrap().len(), 2);
    }

    pub(crate) fn big_message_streams_in_chunks(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let mut d = s.begin_delivery(&user("joe"), Folder::Inbox).unwrap();
        let mut whole = Vec::new();
        whole.extend_from_slice(b"Subject: big\n\n");
        d.write_chunk(b"Subject: big\n\n").unwrap();
        for i in 0..2000u32 {
            let line = format!("line {i:05} {}\n", "x".repeat(1000));
            d.write_chunk(line.as_bytes()).unwrap();
            whole.extend_from_slice(line.as_bytes());
        }
        let r = d.commit().unwrap();
        assert_eq!(r.stored_size, whole.len() as u64);
        assert_eq!(r.size, crlf(&whole).len() as u64);
        let mut md = s.open_maildrop(&user("joe")).unwrap();
        assert_eq!(md.entries()[0].size, r.size);
        assert_eq!(read_all(md.read_message(1).unwrap()), crlf(&whole));
        assert_eq!(
            read_all(md.read_top(1, 1).unwrap()),
            crlf(format!("Subject: big\n\nline 00000 {}\n", "x".repeat(1000)).as_bytes())
        );
    }

    pub(crate) fn concurrent_deliveries(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let s = Arc::clone(&env.store);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let msg = format!("Subject: t{t} m{i}\n\n.\n");
                        s.deliver(&user("joe"), Folder::Inbox, &mut msg.as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut md = env.store.open_maildrop(&user("joe")).unwrap();
        assert_eq!(md.entries().len(), 100);
        let uids: std::collections::HashSet<_> =
            md.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(uids.len(), 100);
        let mut bodies = std::collections::HashSet::new();
        for n in 1..=100 {
            bodies.insert(read_all(md.read_message(n).unwrap()));
        }
        assert_eq!(bodies.len(), 100);
    }

    /// What the store hands out can move into `spawn_blocking` tasks.
    pub(crate) fn handles_are_send_and_static(make: fn(Opts) -> Env) {
        fn send_static<T: Send + 'static>(t: T) -> T {
            t
        }
        let env = with_joe(make, Opts::default());
        let d = send_static(
            env.store
                .begin_delivery(&user("joe"), Folder::Inbox)
                .unwrap(),
        );
        let d = std::thread::spawn(move || {
            let mut d = d;
            d.write_chunk(b"moved between threads\n").unwrap();
            d
        })
        .join()
        .unwrap();
        d.commit().unwrap();
        let mut md = send_static(env.store.open_maildrop(&user("joe")).unwrap());
        let r = send_static(md.read_message(1).unwrap());
        let body = std::thread::spawn(move || read_all(r)).join().unwrap();
        assert_eq!(body, b"moved between threads\r\n");
        let md = std::thread::spawn(move || md).join().unwrap();
        md.commit().unwrap();
    }

    pub(crate) fn unknown_uid_is_a_clear_error(make: fn(Opts) -> Env) {
        let env = with_joe(make, Opts::default());
        let s = &*env.store;
        let bogus = Uid::new("FFFFFFFFFFFFFFFF").unwrap();
        assert!(matches!(
            s.read(&user("joe"), Folder::Inbox, &bogus),
            Err(Error::NoSuchMessage)
        ));
        assert!(matches!(
            s.delete(&user("joe"), Folder::Inbox, &bogus),
            Err(Error::NoSuchMessage)
        ));
        assert!(matches!(
            s.move_message(&user("joe"), Folder::Inbox, &bogus, Folder::Spam),
            Err(Error::NoSuchMessage)
        ));
    }
}

macro_rules! suite {
    ($backend:ident, $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(super::$backend);
                }
            )*
        }
    };
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        suite!(maildir, $($case),*);
        suite!(memory, $($case),*);
    };
}

both!(
    users_are_explicit,
    auto_create_on_delivery,
    deliver_list_and_retrieve,
    top_streams_header_and_n_lines,
    maildrop_lock_is_exclusive_and_released,
    spam_folder_as_a_maildrop,
    deletion_marks_commit_and_rollback,
    uids_are_stable_unique_and_never_reused,
    spam_folder_is_separate,
    move_and_delete_by_uid,
    retention_by_save_time,
    size_limit,
    quota,
    uncommitted_delivery_stores_nothing,
    sealed_deliveries_commit_later,
    big_message_streams_in_chunks,
    concurrent_deliveries,
    unknown_uid_is_a_clear_error,
    handles_are_send_and_static,
);
