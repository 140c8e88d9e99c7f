//! The per-folder `mailbag-uidlist` index: UID validity, next UID, and for
//! every known message its UID and CRLF size, keyed by the file's base name.
//!
//! ```text
//! mailbag-uidlist 1 V1764000000 N4
//! 1 2100 1764000000.M5P9Q1.mx,S=2048,W=2100
//! 3 517 1764000001.M1P77.other-mta
//! ```
//!
//! The file is read from disk, so its parser treats it as untrusted: bad lines
//! are skipped (those messages get new UIDs), a bad header discards the file
//! (the folder gets a new UID validity, so no UID string is ever reused).
//!
//! A Dovecot `dovecot-uidlist` (version 3) can seed a new index, so that UIDs
//! stay the same when a Maildir moves from Dovecot to us. Such an index
//! remembers where Dovecot's numbering stopped (`D<next>` in the header):
//! the UIDs it gives from there on are its own, and their POP3 ids take a
//! form Dovecot never makes (see `Msg::unique_id`), since Dovecot, serving
//! the same Maildir, would number the same new messages differently under
//! the same UID validity. A POP3 id Dovecot kept for a message (`P<uidl>`,
//! from a migration to Dovecot) is kept too, on a line of its own:
//!
//! ```text
//! mailbag-uidlist 1 V1700000000 N9 D8
//! 6 - 1699999000.M1P1.old
//! 7 104 1700000000.M5P9Q1.mx,S=100,W=104
//! 8 517 1700000100.M1P77.mx,S=500,W=517
//! P 6 UID17-1198765432
//! ```

use std::collections::HashSet;

/// Name of our index file in a Maildir folder.
pub(crate) const FILE_NAME: &str = "mailbag-uidlist";
const MAGIC: &str = "mailbag-uidlist 1 ";

/// One indexed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) uid: u32,
    pub(crate) crlf_size: Option<u64>,
    pub(crate) base: String,
    /// The POP3 id another server gave it, kept by Dovecot (`P<uidl>`).
    pub(crate) pop3_uidl: Option<String>,
}

/// A parsed index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UidList {
    pub(crate) uidvalidity: u32,
    pub(crate) next_uid: u32,
    /// Seeded from Dovecot, whose numbering stopped here: UIDs from it on
    /// were given by us.
    pub(crate) dovecot_next: Option<u32>,
    pub(crate) records: Vec<Record>,
}

/// Whether `s` may be a POP3 unique id (RFC 1939 section 7: 1 to 70
/// characters from 0x21 to 0x7E).
fn valid_pop3_uidl(s: &str) -> bool {
    (1..=crate::types::MAX_UID_LEN).contains(&s.len())
        && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn valid_base(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with('.')
        && !b
            .bytes()
            .any(|c| c == b'/' || c == b':' || c < b' ' || c == 0x7f)
}

fn header_field(tok: &str, tag: char) -> Option<u32> {
    let v = tok.strip_prefix(tag)?;
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl UidList {
    /// An empty index.
    pub(crate) fn new(uidvalidity: u32) -> Self {
        UidList {
            uidvalidity: uidvalidity.max(1),
            next_uid: 1,
            dovecot_next: None,
            records: Vec::new(),
        }
    }

    /// Parses our format; `None` when the header is unusable.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let header = lines.next()?.strip_prefix(MAGIC)?;
        let mut toks = header.split(' ');
        let uidvalidity = header_field(toks.next()?, 'V').filter(|v| *v != 0)?;
        let next_uid = header_field(toks.next()?, 'N').filter(|v| *v != 0)?;
        let dovecot_next = toks
            .next()
            .and_then(|t| header_field(t, 'D'))
            .filter(|v| *v != 0);
        let mut list = UidList {
            uidvalidity,
            next_uid,
            dovecot_next,
            records: Vec::new(),
        };
        let mut kept_ids = Vec::new();
        for line in lines {
            if let Some(rest) = line.strip_prefix("P ") {
                if let Some((uid, id)) = rest.split_once(' ')
                    && let Some(uid) = header_field_plain(uid)
                    && valid_pop3_uidl(id)
                {
                    kept_ids.push((uid, id.to_owned()));
                }
                continue;
            }
            let mut parts = line.splitn(3, ' ');
            let (Some(uid), Some(size), Some(base)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(uid) = header_field_plain(uid) else {
                continue;
            };
            let crlf_size = if size == "-" {
                None
            } else {
                match size.parse::<u64>() {
                    Ok(s) if size.bytes().all(|b| b.is_ascii_digit()) => Some(s),
                    _ => continue,
                }
            };
            if uid == 0 || !valid_base(base) {
                continue;
            }
            list.records.push(Record {
                uid,
                crlf_size,
                base: base.to_owned(),
                pop3_uidl: None,
            });
        }
        for (uid, id) in kept_ids {
            if let Some(r) = list.records.iter_mut().find(|r| r.uid == uid) {
                r.pop3_uidl.get_or_insert(id);
            }
        }
        list.normalize();
        Some(list)
    }

    /// Seeds an index from Dovecot's `dovecot-uidlist` (version 3):
    /// `3 V<validity> N<next> ...` then `<uid> [fields] :<file name>`.
    pub(crate) fn from_dovecot(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let mut header = lines.next()?.split(' ');
        if header.next()? != "3" {
            return None;
        }
        let mut uidvalidity = None;
        let mut next_uid = None;
        for tok in header {
            if tok.starts_with('V') {
                uidvalidity = header_field(tok, 'V');
            } else if tok.starts_with('N') {
                next_uid = header_field(tok, 'N');
            }
        }
        let mut list = UidList {
            uidvalidity: uidvalidity.filter(|v| *v != 0)?,
            next_uid: next_uid.filter(|v| *v != 0)?,
            dovecot_next: None,
            records: Vec::new(),
        };
        for line in lines {
            let Some((left, name)) = line.split_once(':') else {
                continue;
            };
            let mut fields = left.split(' ');
            let Some(uid) = fields.next().and_then(header_field_plain) else {
                continue;
            };
            let fields: Vec<&str> = fields.collect();
            let crlf_size = fields
                .iter()
                .filter_map(|f| f.strip_prefix('W'))
                .find_map(|v| v.parse::<u64>().ok());
            let base = name.split(':').next().unwrap_or("");
            if uid == 0 || !valid_base(base) {
                continue;
            }
            // An empty `P` (Dovecot's `pop3_save_uidl` with `%g` or `%f`) means the
            // id is the file's base name; Dovecot serves it so (a probe's clients
            // fetched everything again when it was ignored).
            let pop3_uidl = fields
                .iter()
                .filter_map(|f| f.strip_prefix('P'))
                .map(|v| if v.is_empty() { base } else { v })
                .find(|v| valid_pop3_uidl(v))
                .map(str::to_owned);
            list.records.push(Record {
                uid,
                crlf_size,
                base: base.to_owned(),
                pop3_uidl,
            });
        }
        list.normalize();
        // The first UID Dovecot has not given; none when it gave the last
        // one (then no UID is left for us without numbering anew).
        let past = list
            .records
            .last()
            .map_or(0, |r| u64::from(r.uid) + 1)
            .max(u64::from(list.next_uid));
        list.dovecot_next = u32::try_from(past).ok();
        Some(list)
    }

    /// Drops duplicate UIDs and bases (first wins), sorts by UID and makes
    /// `next_uid` larger than every UID.
    fn normalize(&mut self) {
        let mut uids = HashSet::new();
        let mut bases = HashSet::new();
        self.records
            .retain(|r| uids.insert(r.uid) && bases.insert(r.base.clone()));
        self.records.sort_by_key(|r| r.uid);
        // A kept POP3 id names one message only (the first; the others get
        // the id made from their UID).
        let mut ids = HashSet::new();
        for r in &mut self.records {
            if let Some(id) = &r.pop3_uidl
                && !ids.insert(id.clone())
            {
                r.pop3_uidl = None;
            }
        }
        if let Some(max) = self.records.last().map(|r| r.uid)
            && self.next_uid <= max
        {
            self.next_uid = max.saturating_add(1);
        }
    }

    /// Our file format.
    pub(crate) fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.records.len() * 64);
        out.extend_from_slice(
            format!("{MAGIC}V{} N{}", self.uidvalidity, self.next_uid).as_bytes(),
        );
        if let Some(d) = self.dovecot_next {
            out.extend_from_slice(format!(" D{d}").as_bytes());
        }
        out.push(b'\n');
        for r in &self.records {
            let size = r
                .crlf_size
                .map_or_else(|| "-".to_owned(), |s| s.to_string());
            out.extend_from_slice(format!("{} {} {}\n", r.uid, size, r.base).as_bytes());
        }
        for r in &self.records {
            if let Some(id) = &r.pop3_uidl {
                out.extend_from_slice(format!("P {} {id}\n", r.uid).as_bytes());
            }
        }
        out
    }
}

fn header_field_plain(tok: &str) -> Option<u32> {
    if tok.is_empty() || tok.len() > 10 || !tok.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tok.parse().ok()
}

/// Parses arbitrary bytes as both index formats, for fuzzing: never panics,
/// and whatever parses serializes to something that parses to the same value.
#[doc(hidden)]
pub fn fuzz_uidlist(bytes: &[u8]) {
    for parsed in [UidList::parse(bytes), UidList::from_dovecot(bytes)]
        .into_iter()
        .flatten()
    {
        let again = UidList::parse(&parsed.serialize());
        assert_eq!(again.as_ref(), Some(&parsed), "uidlist round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_our_format() {
        let text =
            b"mailbag-uidlist 1 V17 N4\n1 2100 a,S=1\n3 - b\nbad line\n0 1 zero\n2 5 a,S=1\n";
        let l = UidList::parse(text).unwrap();
        assert_eq!((l.uidvalidity, l.next_uid), (17, 4));
        assert_eq!(
            l.records,
            vec![
                Record {
                    uid: 1,
                    crlf_size: Some(2100),
                    base: "a,S=1".into(),
                    pop3_uidl: None,
                },
                Record {
                    uid: 3,
                    crlf_size: None,
                    base: "b".into(),
                    pop3_uidl: None,
                },
            ]
        );
        assert_eq!(UidList::parse(&l.serialize()), Some(l));
    }

    #[test]
    fn bad_header_is_rejected_and_next_uid_is_repaired() {
        assert!(UidList::parse(b"mailbag-uidlist 1 V0 N4\n").is_none());
        assert!(UidList::parse(b"something else\n").is_none());
        assert!(UidList::parse(b"").is_none());
        let l = UidList::parse(b"mailbag-uidlist 1 V9 N2\n7 1 x\n").unwrap();
        assert_eq!(l.next_uid, 8);
    }

    #[test]
    fn seeds_from_dovecot_uidlist() {
        let text = b"3 V1764281234 N3 G3085f01b7f11094c501100008c4a11c1\n\
1 :1764281000.M1P2.vm,S=100,W=104:2,S\n\
2 W300 :1764281001.M2P2.vm\n";
        let l = UidList::from_dovecot(text).unwrap();
        assert_eq!((l.uidvalidity, l.next_uid), (1_764_281_234, 3));
        assert_eq!(l.records.len(), 2);
        assert_eq!(l.records[0].base, "1764281000.M1P2.vm,S=100,W=104");
        assert_eq!(l.records[1].crlf_size, Some(300));
        assert!(UidList::from_dovecot(b"1 2 3\n").is_none());
        // Where Dovecot's numbering stopped is kept, and survives our format.
        assert_eq!(l.dovecot_next, Some(3));
        assert_eq!(UidList::parse(&l.serialize()), Some(l));
    }

    /// The POP3 ids Dovecot kept (`P<uidl>`, from a migration to it) are
    /// kept through our format; a bad one, or one a second message also
    /// claims, is not.
    #[test]
    fn kept_pop3_ids_from_dovecot() {
        let text = b"3 V1700000000 N9\n\
6 PAB12 :1699999000.M1P1.old\n\
7 W104 PUID17-1198765432 :1699999001.M1P1.old\n\
8 PAB12 W5 :1699999002.M1P1.old\n\
9 Pbad\x01id :1699999003.M1P1.old\n";
        let l = UidList::from_dovecot(text).unwrap();
        let ids: Vec<Option<&str>> = l.records.iter().map(|r| r.pop3_uidl.as_deref()).collect();
        assert_eq!(ids, [Some("AB12"), Some("UID17-1198765432"), None, None]);
        assert_eq!(l.records[1].crlf_size, Some(104));
        assert_eq!((l.next_uid, l.dovecot_next), (10, Some(10)));
        let ours = l.serialize();
        let text = String::from_utf8(ours.clone()).unwrap();
        assert!(
            text.starts_with("mailbag-uidlist 1 V1700000000 N10 D10\n"),
            "{text}"
        );
        assert!(text.ends_with("P 6 AB12\nP 7 UID17-1198765432\n"), "{text}");
        assert_eq!(UidList::parse(&ours), Some(l));
        // An empty `P`: the id is the file's base name, as Dovecot serves it.
        let l = UidList::from_dovecot(
            b"3 V1700000000 N3\n1 W1223 P :1796548283.M0000001P31209.vm,S=1200\n\
2 P :1796548284.M2P3.vm,S=5:2,S\n",
        )
        .unwrap();
        let ids: Vec<Option<&str>> = l.records.iter().map(|r| r.pop3_uidl.as_deref()).collect();
        assert_eq!(
            ids,
            [
                Some("1796548283.M0000001P31209.vm,S=1200"),
                Some("1796548284.M2P3.vm,S=5")
            ]
        );
        // An index written before these fields reads as before.
        let old = UidList::parse(b"mailbag-uidlist 1 V9 N2\n1 5 a\n").unwrap();
        assert_eq!(
            (old.dovecot_next, old.records[0].pop3_uidl.as_deref()),
            (None, None)
        );
        // A `P` line for no record, or a bad id, is dropped.
        let l = UidList::parse(b"mailbag-uidlist 1 V9 N3 D2\n1 5 a\nP 2 x\nP 1 a b\n").unwrap();
        assert_eq!(l.records[0].pop3_uidl, None);
        assert_eq!(l.dovecot_next, Some(2));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_uidlist(&bytes);
        }

        #[test]
        fn structured_input_round_trips(v in 1u32.., n in 1u32..1000,
            d in proptest::option::of(1u32..2000),
            recs in proptest::collection::vec((1u32..2000, proptest::option::of(any::<u64>()),
                "[a-zA-Z0-9.,=]{1,20}", proptest::option::of("[!-~]{1,70}")), 0..20)) {
            let mut l = UidList { uidvalidity: v, next_uid: n, dovecot_next: d, records: recs.into_iter()
                .map(|(uid, crlf_size, base, pop3_uidl)| Record { uid, crlf_size, base, pop3_uidl })
                .collect() };
            l.normalize();
            if l.records.iter().all(|r| valid_base(&r.base)) {
                prop_assert_eq!(UidList::parse(&l.serialize()), Some(l));
            }
        }
    }
}
