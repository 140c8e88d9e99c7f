//! Model-based test: random operation sequences on the Maildir backend give
//! the same observable results as on the memory backend (the model).

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use mailbag_mailstore::{
    Error, Folder, MaildirOptions, MaildirStore, Maildrop, Mailstore, MemoryStore, Uid, UserName,
};
use proptest::prelude::*;

const USERS: [&str; 2] = ["joe", "ann"];

#[derive(Clone, Debug)]
enum Op {
    Deliver {
        user: usize,
        spam: bool,
        body: Vec<u8>,
    },
    Open {
        user: usize,
    },
    Retr {
        n: usize,
    },
    Top {
        n: usize,
        lines: u64,
    },
    Mark {
        n: usize,
    },
    Unmark,
    Commit,
    DropSession,
    Release {
        user: usize,
    },
    ExpungeSpam,
}

fn op() -> impl Strategy<Value = Op> {
    let body = proptest::collection::vec(
        prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), Just(b' ')],
        0..120,
    );
    prop_oneof![
        4 => (0..2usize, any::<bool>(), body).prop_map(|(user, spam, body)| Op::Deliver { user, spam, body }),
        3 => (0..2usize).prop_map(|user| Op::Open { user }),
        3 => (0..6usize).prop_map(|n| Op::Retr { n }),
        1 => (0..6usize, 0..4u64).prop_map(|(n, lines)| Op::Top { n, lines }),
        3 => (0..6usize).prop_map(|n| Op::Mark { n }),
        1 => Just(Op::Unmark),
        2 => Just(Op::Commit),
        1 => Just(Op::DropSession),
        1 => (0..2usize).prop_map(|user| Op::Release { user }),
        1 => Just(Op::ExpungeSpam),
    ]
}

fn kind(e: &Error) -> String {
    match e {
        Error::Io { .. } => panic!("unexpected I/O error: {e}"),
        other => format!("{other:?}"),
    }
}

fn read_all(r: Result<mailbag_mailstore::MessageReader, Error>) -> Result<Vec<u8>, String> {
    let mut r = r.map_err(|e| kind(&e))?;
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    Ok(v)
}

/// One backend under test plus what the test tracks about it.
struct Side {
    store: Box<dyn Mailstore>,
    session: Option<(usize, Box<dyn Maildrop>)>,
    /// message sequence number -> INBOX uid first seen (uids must be stable)
    uid_of: HashMap<(usize, u64), Uid>,
    /// uid -> sequence number (a uid must never name another message)
    seq_of: HashMap<(usize, Uid), u64>,
}

impl Side {
    fn new(store: Box<dyn Mailstore>) -> Self {
        for u in USERS {
            store.create_user(&UserName::new(u).unwrap()).unwrap();
        }
        Side {
            store,
            session: None,
            uid_of: HashMap::new(),
            seq_of: HashMap::new(),
        }
    }

    /// Applies `op`, returns the observation to compare.
    fn apply(&mut self, op: &Op, seq: u64) -> String {
        let user = |i: usize| UserName::new(USERS[i]).unwrap();
        match op {
            Op::Deliver {
                user: u,
                spam,
                body,
            } => {
                let mut msg = format!("X-Seq: {seq}\n").into_bytes();
                msg.extend_from_slice(body);
                let folder = if *spam { Folder::Spam } else { Folder::Inbox };
                let r = self.store.deliver(&user(*u), folder, &mut &msg[..]);
                format!("{:?}", r.map(|r| r.size).map_err(|e| kind(&e)))
            }
            Op::Open { user: u } => {
                if self.session.as_ref().is_some_and(|(su, _)| su != u) {
                    self.session = None;
                }
                match self.store.open_maildrop(&user(*u)) {
                    Err(e) => kind(&e),
                    Ok(mut md) => {
                        let mut obs = Vec::new();
                        for n in 1..=md.entries().len() {
                            let top = read_all(md.read_top(n, 0)).unwrap();
                            let text = String::from_utf8_lossy(&top).into_owned();
                            let s: u64 = text
                                .strip_prefix("X-Seq: ")
                                .and_then(|t| t.split(['\r', '\n']).next())
                                .and_then(|t| t.parse().ok())
                                .expect("X-Seq header");
                            let uid = md.entries()[n - 1].uid.clone();
                            let first = self.uid_of.entry((*u, s)).or_insert_with(|| uid.clone());
                            assert_eq!(first, &uid, "uid of message {s} changed");
                            let owner = self.seq_of.entry((*u, uid.clone())).or_insert(s);
                            assert_eq!(*owner, s, "uid {uid} reused");
                            obs.push((s, md.entries()[n - 1].size));
                        }
                        self.session = Some((*u, md));
                        format!("{obs:?}")
                    }
                }
            }
            Op::Retr { n } => match self.session.as_mut() {
                None => "no session".into(),
                Some((_, md)) => format!("{:?}", read_all(md.read_message(*n))),
            },
            Op::Top { n, lines } => match self.session.as_mut() {
                None => "no session".into(),
                Some((_, md)) => format!("{:?}", read_all(md.read_top(*n, *lines))),
            },
            Op::Mark { n } => match self.session.as_mut() {
                None => "no session".into(),
                Some((_, md)) => {
                    format!(
                        "{:?} {:?}",
                        md.mark_deleted(*n).map_err(|e| kind(&e)),
                        md.stat()
                    )
                }
            },
            Op::Unmark => match self.session.as_mut() {
                None => "no session".into(),
                Some((_, md)) => {
                    md.unmark_all();
                    format!("{:?}", md.stat())
                }
            },
            Op::Commit => match self.session.take() {
                None => "no session".into(),
                Some((_, md)) => format!("{:?}", md.commit().map_err(|e| kind(&e))),
            },
            Op::DropSession => {
                self.session = None;
                "dropped".into()
            }
            Op::Release { user: u } => {
                let spam = self.store.list(&user(*u), Folder::Spam).unwrap();
                match spam.first() {
                    None => "empty".into(),
                    Some(m) => format!(
                        "{:?}",
                        self.store
                            .move_message(&user(*u), Folder::Spam, &m.uid, Folder::Inbox)
                            .map_err(|e| kind(&e))
                    ),
                }
            }
            Op::ExpungeSpam => {
                let later = SystemTime::now() + Duration::from_secs(3600);
                format!(
                    "{:?}",
                    self.store
                        .expunge_all_older_than(Folder::Spam, later)
                        .map_err(|e| kind(&e))
                )
            }
        }
    }

    /// Everything visible at the end, per user and folder: (size, seen, content).
    fn final_state(&mut self) -> Vec<Vec<(u64, bool, Vec<u8>)>> {
        self.session = None;
        let mut out = Vec::new();
        for u in USERS {
            let u = UserName::new(u).unwrap();
            for f in Folder::ALL {
                let mut v = Vec::new();
                for m in self.store.list(&u, f).unwrap() {
                    let body = read_all(self.store.read(&u, f, &m.uid)).unwrap();
                    // The size also counts the CRLF POP3 adds after an
                    // unterminated last line.
                    let added = if body.is_empty() || body.ends_with(b"\n") {
                        0
                    } else {
                        2
                    };
                    assert_eq!(body.len() as u64 + added, m.size);
                    v.push((m.size, m.seen, body));
                }
                out.push(v);
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn maildir_matches_memory_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut o = MaildirOptions::default();
        o.fsync = false; // durability is not what this test looks at
        let mut maildir = Side::new(Box::new(MaildirStore::new(dir.path(), o).unwrap()));
        let mut model = Side::new(Box::new(MemoryStore::new()));
        for (seq, op) in ops.iter().enumerate() {
            let a = maildir.apply(op, seq as u64);
            let b = model.apply(op, seq as u64);
            prop_assert_eq!(a, b, "step {} {:?}", seq, op);
        }
        prop_assert_eq!(maildir.final_state(), model.final_state());
    }
}
